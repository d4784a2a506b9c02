"""The pages (templates/) and static files (static/) that p2pconf serves.

Installed as the package data `p2pconf.web` (pyproject.toml maps this folder), so a
wheel carries them; the server finds them through importlib.resources.
"""
