"""One reader per platform's configuration form; :func:`pinlab.advice.pinconfig.parse_config`
chooses among them by structure."""
