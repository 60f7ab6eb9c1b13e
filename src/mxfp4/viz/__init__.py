"""`mxfp4 viz`: a local web server exposing the library as a JSON API, plus static pages.

The server (app.py, routes.py) needs the `viz` extra: pip install "mxfp4[viz]".
"""
