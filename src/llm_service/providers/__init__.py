"""Vendor adapters behind one small interface (see `base.py`); `registry.py` maps ids to them."""
