"""The app's navigation (``app.py`` runs :func:`run_app`) and the one shim a page needs when its URL is opened
first in a fresh server process.

Why the shim (Streamlit 1.67, read in ``streamlit/runtime/pages_manager.py``,
``runtime/scriptrunner/script_runner.py`` and ``commands/navigation.py``):

- ``PagesManager.uses_pages_directory`` is a class attribute. The first ``PagesManager`` of the process sets it
  to ``(folder of the entry script / "pages").exists()``; only ``st.navigation`` sets it back to False.
  ``AppTest`` resets it to None before every run, so every ``AppTest`` run starts in the legacy mode.
- While it is True, the script runner does not execute the entry script at all: it calls ``_mpa_v1``, which
  builds a page per ``pages/*.py`` file and runs the one the URL names. So ``/grid_sculpting`` opened first runs
  ``pages/grid_sculpting.py`` bare: no ``set_page_config``, the legacy menu (app, grid sculpting, home, molecule
  sculpting) instead of the app's, and the entry script gets no chance to call ``st.navigation``.
- No config option turns this off (``client.showSidebarNavigation`` only hides the legacy menu), and how the
  entry script declares its pages does not matter because it is not run. The folder must be named ``pages/``.

So each page calls :func:`ensure_app_navigation` first: in the legacy mode it runs the app's navigation in this
same script run (which runs the requested page again, inside it, with the same widget events and URL) and stops
the bare run. Once any run has called ``st.navigation``, the process stays out of the legacy mode and the shim
returns at once.
"""

from __future__ import annotations

import streamlit as st

from sculpt_core.app.gc_tuning import after_script_run
from sculpt_core.app.page_gate import page_run
from sculpt_core.app.torch_threads import use_one_torch_thread

PAGE_TITLE = "Sculpt — compositional sculpting of GFlowNets"


def run_app() -> None:
    """Page config and navigation over the file pages in ``pages/`` (paths relative to the entry script)."""
    st.set_page_config(page_title=PAGE_TITLE, page_icon=":material/texture:", layout="wide")
    use_one_torch_thread()  # every page's torch work, and every later thread's (see sculpt_core.app.torch_threads)
    pages = [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/grid_sculpting.py", title="Grid Sculpting", icon=":material/grid_on:"),
        st.Page("pages/molecule_sculpting.py", title="Molecule Sculpting", icon=":material/science:"),
        st.Page("pages/distribution_map.py", title="Distribution Map", icon=":material/scatter_plot:"),
        st.Page("pages/diffusion_sculpting.py", title="Diffusion Sculpting", icon=":material/blur_on:"),
        st.Page("pages/diffusion_images.py", title="Diffusion Images", icon=":material/palette:"),
    ]
    try:
        with page_run():  # background prefetch pauses meanwhile (sculpt_core.app.page_gate)
            st.navigation(pages).run()
    finally:  # also when the page stops or reruns (st.stop, st.rerun raise through here)
        after_script_run()


def ensure_app_navigation() -> None:
    """Make a page opened by its URL run inside :func:`run_app`'s navigation (call it first thing in a page)."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
        from streamlit.runtime.scriptrunner import get_script_run_ctx
    except ImportError:  # a Streamlit without these internals: nothing to fix
        return
    if not getattr(PagesManager, "uses_pages_directory", None):
        return  # st.navigation has run in this process: the page is already inside it
    if get_script_run_ctx() is None:
        return  # not a script run (e.g. the page imported as a module)
    PagesManager.uses_pages_directory = False  # what st.navigation itself sets
    run_app()
    st.stop()  # the bare (legacy) run of this page ends here


__all__ = ["PAGE_TITLE", "ensure_app_navigation", "run_app"]
