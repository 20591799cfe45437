"""Sculpt: the Streamlit app (``streamlit run app.py``). Navigation over the file pages in ``pages/``:
Home, Grid Sculpting, Molecule Sculpting, Distribution Map, Diffusion Sculpting, Diffusion Images (declared in
:func:`sculpt_core.app.navigation.run_app`)."""

from sculpt_core.app.navigation import run_app

run_app()
