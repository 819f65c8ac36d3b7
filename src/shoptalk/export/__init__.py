"""Export a trained model: merged HF folder, GGUF, Ollama Modelfile, each parity-checked.

`run.export_model` is the stage; `merge`, `gguf` and `ollama` write the
artifacts, `parity` compares them with the model in memory, `report` writes
what it found.
"""

from shoptalk.errors import ShoptalkError


class ExportError(ShoptalkError):
    """An export could not be written, or it does not behave like the tested model."""
