"""Streamlit dashboard of the crystal-graph screening tool (start with ``bash .ci/dashboard``)."""
