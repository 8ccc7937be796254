"""Streamlit entry point: `streamlit run app/dashboard/app.py --server.address 127.0.0.1 ...`.

Streamlit puts this script's folder first on sys.path, where this file would shadow the `app`
package; the repository root goes in front of it before anything is imported from the package.
"""

import sys
from pathlib import Path

_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if sys.path[:1] != [_REPO_ROOT]:
    sys.path.insert(0, _REPO_ROOT)
    sys.modules.pop("app", None)

from app.dashboard.page import main  # noqa: E402

main()
