"""Built-in training tasks: ``digits`` (digits-mlp, digits-cnn), ``tinylm`` (tinylm-pretrain) and
``finetune`` (causal-lm-finetune), ``command`` (the placeholder task of the user's own script); ``_corpus`` generates the tinylm language, ``_lm_common``
holds what the language-model tasks share."""
