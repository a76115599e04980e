"""Follow-up signals: outbound requests to targets, guarded against SSRF."""
