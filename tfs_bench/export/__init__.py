"""The export stage: Keras CNNs from the zoo written as SavedModels with a model card."""
