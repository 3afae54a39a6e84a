"""Loaded by pytest before any test module: the tests run under the same CPU numerics policy as the entry points
(pinned kernel ISA, sleeping OpenMP threads; lt_detectron/utils/numerics.py), set before anything imports torch."""

from lt_detectron.utils.numerics import pin_cpu_numerics

pin_cpu_numerics()
