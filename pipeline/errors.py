"""Errors caused by user input. The CLI prints them as one line, without a traceback."""


class PipelineError(Exception):
    """Bad config, data, model directory or model output; the message names the culprit."""
