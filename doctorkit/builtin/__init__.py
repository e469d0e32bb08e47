"""Built-in fixtures that ship with the kit so the quickstart and the tests run offline: the embedded tiny model
(`model: builtin:tiny`, tiny.py) and the generators of our bundled sample data (sampledata.py, sampledata_dpo.py).
None of the library imports them except to build `builtin:` models."""
