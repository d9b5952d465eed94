"""Where representations come from: models, datasets, one extraction pass, the feature store and the
Gram statistics every probe starts from. The lowest layer above report/config/errors."""
