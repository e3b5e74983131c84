"""Offline evaluation: reference feature networks, generator metrics, classifier analysis."""

from gan_lightning.evaluation.generator_metrics import GeneratorMetrics, markdown_table
from gan_lightning.evaluation.reference import ReferenceNet, load_reference, reference_path, save_reference

__all__ = ["GeneratorMetrics", "ReferenceNet", "load_reference", "markdown_table", "reference_path", "save_reference"]
