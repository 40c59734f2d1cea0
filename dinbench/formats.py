"""The output formats of ``dinbench report --format``: here, without pandas, because ``--help`` lists them."""

FORMATS = ("table", "markdown", "csv", "latex", "json")
