"""Measuring memory: probes per device (`probes`), the start-up profile run that fits a MemoryModel
(`profile`, cached by `cache`), budgets (`budget`, `sizes`), what this process holds (`resources`),
and the memory side of planning for a loaded backend (`planning`).

Nothing is imported here: `tingxie.memory.sizes` must stay importable without numpy (the options
and the pure planner use it).
"""
