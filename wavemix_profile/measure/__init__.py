"""Measure: one model measured in this process.

Parameters and FLOPs, peak memory (CUDA counters or the CPU's fake-tensor estimate), the max-batch
search and its probes, throughput, energy, NVML, the environment a result came from, the paper fit.
May import: estimate, sources, store, core, the zoo, and measure.
"""
