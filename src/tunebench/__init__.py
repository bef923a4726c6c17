"""tunebench: does LoRA match full fine-tuning? A reproducible study runner.

Pipeline: config -> data -> model + method -> train -> evaluate -> results -> report.
"""

__version__ = "0.1.0"
