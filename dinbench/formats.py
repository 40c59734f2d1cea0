"""The output formats of ``dinbench report --format`` and ``--output``'s file suffixes: here, without pandas
or torch, because ``--help`` lists them and ``report`` decides on them before any figure code loads."""

FORMATS = ("table", "markdown", "csv", "latex", "json")
# a file ending in one of these gets the table in that format; any other --output path is a report folder
TABLE_SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".csv": "csv", ".tex": "latex", ".json": "json",
                  ".txt": "markdown"}
