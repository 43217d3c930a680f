"""Amazon SES bounce and complaint notifications, delivered through SNS to ``sendstatus
serve``: the SNS signature checked, then each notification applied as a DSN or a feedback
report would be (core/feedback)."""

DEFAULT_PATH = "/ses"  # where serve takes SNS's posts unless --ses-path says otherwise
