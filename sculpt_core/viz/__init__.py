"""Plotly figure builders for the app: pure functions of numpy arrays (see ``sculpt_core.viz.grid``)."""
