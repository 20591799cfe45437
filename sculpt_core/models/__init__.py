"""Neural networks: grid policy MLPs (and later classifiers and molecule nets)."""
