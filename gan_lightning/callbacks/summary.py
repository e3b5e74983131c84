"""The model summary printed when training starts, without what says nothing: columns whose every value is zero (the
FLOPs Lightning counts only with an example input) and their totals, the row numbers and every module's "train" mode,
and rows of modules without parameters (metrics, parameter-free transforms)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import RichModelSummary


class RunSummary(RichModelSummary):
    """Lightning's rich model summary, one row per network that has parameters."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        from lightning.pytorch.utilities.model_summary.model_summary import (
            get_formatted_model_size,
            get_human_readable_count,
        )
        from rich import get_console
        from rich.table import Table

        columns = dict(summary_data)
        keep = [i for i, p in enumerate(columns.get("Params", [])) if p.strip() not in ("0", "")]
        # the row number and the train/eval mode (every module trains) say nothing; FLOPs only when counted
        shown = {
            name: [values[i] for i in keep]
            for name, values in columns.items()
            if name not in (" ", "Mode", "FLOPs")
            or (name == "FLOPs" and any(v.strip() not in ("0", "", "-") for v in values))
        }
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        for name in shown:
            table.add_column(name, justify="right" if name in ("Params", "FLOPs", "Params per Device") else "left")
        for row in zip(*shown.values()):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        trainable = get_human_readable_count(int(trainable_parameters)).strip()
        frozen = get_human_readable_count(int(total_parameters - trainable_parameters)).strip()
        line = f"parameters: {trainable} trained, {frozen} not trained ({get_formatted_model_size(model_size)} MB)"
        if total_flops:
            line += f"; {get_human_readable_count(int(total_flops))} FLOPs a forward"
        console.print(line)
