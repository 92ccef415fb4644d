"""The EC2 fleet: launch tagged machines, deploy voe over SSH, run the roles, tear down.

``cluster`` names, tags and settings; ``ec2`` the EC2 API (boto3); ``package`` the wheel
that is deployed; ``ssh`` connections (paramiko); ``services`` how a role runs on a
machine; ``deploy`` the steps on one machine; ``commands`` up, down and status.
"""
