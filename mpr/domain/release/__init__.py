"""The mini program release lifecycle: rules, stages, models and the records the catalog keeps."""
