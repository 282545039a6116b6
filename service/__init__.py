"""The tagdistill REST service: datasets, distillation jobs, models and predictions over HTTP."""
