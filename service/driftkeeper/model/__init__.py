"""Models: the estimators, training, the versioned model store and the feedback store."""
