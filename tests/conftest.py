import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
# prepared-data cache (doctorkit/data/cache.py): off, so every test prepares its data afresh; tests/test_data_cache.py
# turns it on in a folder of its own
os.environ.setdefault("DOCTORKIT_DATA_CACHE", "off")
