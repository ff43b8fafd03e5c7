"""The MLflow store and what is kept in it: where the store is and its locks (`store`), which
process owns a running run (`leases`), how a cross-validation is logged (`cv_logging`), how
stored runs are read back (`results`) and a sweep's summary (`sweep_summary`)."""
