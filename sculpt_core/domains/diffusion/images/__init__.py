"""Image diffusion (colored MNIST): U-Net score models, a time-conditioned conv guidance classifier, an
independent digit judge, and the paper's colored-digit compositions on the methods of the 2-D domain."""
