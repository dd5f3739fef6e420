"""What probe computes from captured activations: predictions and the logit lens, interventions
(ablation, patching, steering), attribution, factors and CKA, model comparison, parity checks,
corpus extraction and probing classifiers. Each module is public through ``probe.<name>`` (lazy, in
``probe/__init__.py``); this package exports nothing itself, so no module shares a name with a function."""
