"""``tvdeploy serve``: artifacts behind the Open Inference Protocol (KServe v2), on KServe's Python SDK.

Needs the ``serve`` extra (``pip install "tvdeploy[serve]"``): kserve, which brings FastAPI, uvicorn and
prometheus-client. The runtime underneath is tvdeploy's own (no torch).
"""
