// NN tests arrive with the NN module's issue.
