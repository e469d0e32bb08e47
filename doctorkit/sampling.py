"""The one set of sampling defaults: chat, the demo, the OpenAI server, generation.sampling_kwargs and evaluate's
mcq --samples (self-consistency chains) start here.

A module of its own, without imports, so the light command-line and schema modules can read it cheaply."""
TEMPERATURE = 0.7          # 0 = greedy (deterministic)
TOP_P = 0.9
REPETITION_PENALTY = 1.1   # above 1 discourages the loops small fine-tuned models fall into
MAX_NEW_TOKENS = 256
