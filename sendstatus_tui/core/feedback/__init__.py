"""What comes back after the send: bounces and complaints applied to the recipients, the
counters, the suppression list and the audit trail."""
