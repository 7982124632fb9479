"""People and roles: annotators, admins and researchers, vendors, invitations, log-in and each
role's landing page. Imports no other Tandem app."""
