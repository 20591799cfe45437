"""Sculpt: the Streamlit app (``streamlit run app.py``). Navigation over the file pages in ``pages/``."""

import streamlit as st

st.set_page_config(page_title="Sculpt — compositional sculpting of GFlowNets", page_icon=":material/texture:", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/grid_sculpting.py", title="Grid Sculpting", icon=":material/grid_on:"),
    st.Page("pages/molecule_sculpting.py", title="Molecule Sculpting", icon=":material/science:"),
]
st.navigation(pages).run()
