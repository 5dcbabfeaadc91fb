"""Istio's Bookinfo sample, in Python: productpage, details, reviews and ratings.

Each service is a small Flask app built by a `create_app()` factory (bookinfo.<service>), with
its settings read from the environment in one place (bookinfo.config). What they share lives in
its own module: header propagation, outbound calls, health and metrics. Run them with
`python -m bookinfo` (bookinfo.cli).
"""
