"""All AWS access: sessions per env and typed calls. Only this package imports boto3."""

from builder.aws.session import Aws, AwsTarget, CallLog, EnvAws, translate

__all__ = ["Aws", "AwsTarget", "CallLog", "EnvAws", "translate"]
