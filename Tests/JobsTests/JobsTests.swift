// Jobs tests arrive with the Jobs module's issue.
