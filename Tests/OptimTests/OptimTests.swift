// Optim tests arrive with the Optim module's issue.
