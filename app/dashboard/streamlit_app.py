"""The script Streamlit runs (`python -m app.dashboard` or the `telemetry-dashboard` command start it).

Named so that Streamlit, which puts this script's folder first on sys.path, finds no module here that
shadows the `app` package.
"""

from app.dashboard.page import main

main()
