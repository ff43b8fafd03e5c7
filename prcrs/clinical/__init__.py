"""The clinical analysis of a model's risks: calibration and its evidence bounds, the rule-out
band, decision curves, alarms and warning time, subgroups, and factor explanations. Read by the
engine (fold importances), the run logger (pooled clinical metrics), the platform and the report;
it reads none of them."""
