"""lionbench: is Lion better than AdamW on my model, my data and my hardware?"""

__version__ = "0.1.0"
