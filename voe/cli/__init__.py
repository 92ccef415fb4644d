"""The ``voe`` console script: every command, and the reports it prints (status, audit,
export, reparse)."""
