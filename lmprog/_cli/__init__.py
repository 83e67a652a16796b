"""The pieces of the ``lmprog`` command line (``lmprog.cli`` assembles them): loading user files,
running optimizations and evaluations, and inspecting prompts, prompt files and traces."""
