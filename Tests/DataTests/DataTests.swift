// Data tests arrive with the Data module's issue.
