"""AWS credentials and SigV4 signing for requests sent through the shared httpx client (Bedrock).

botocore does the cryptography, nothing is hand-written: credentials come from the standard AWS
chain (env vars, shared config/credentials files, SSO, container and instance roles) resolved
once off the event loop, are frozen per request, and `sign` signs the exact URL and body bytes
that will be sent.
"""

from __future__ import annotations

import asyncio
import os

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials
from botocore.exceptions import BotoCoreError
from botocore.session import Session

from rerankd import errors
from rerankd.providers.http import HttpRequest


def resolve_region(region: str | None, profile: str | None, provider: str) -> str:
    """The region from configuration, else AWS_REGION / AWS_DEFAULT_REGION / the AWS config file."""
    found = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not found:
        try:
            found = Session(profile=profile).get_config_variable("region")
        except BotoCoreError:
            found = None
    if not found:
        raise errors.ProviderMisconfigured(
            f"{provider}: no AWS region (set options.region or AWS_REGION)", provider=provider
        )
    return str(found)


def partition(region: str) -> str:
    """The ARN partition of a region (aws, aws-cn, aws-us-gov)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


class AwsCredentials:
    """Credentials of one provider: resolved lazily (in a thread), frozen for each request."""

    def __init__(
        self, provider: str, *, profile: str | None = None, static: Credentials | None = None
    ) -> None:
        self._provider = provider
        self._profile = profile
        self._credentials: Credentials | None = static
        self._lock = asyncio.Lock()

    async def frozen(self) -> ReadOnlyCredentials:
        credentials: Credentials = self._credentials or await self._first()
        if isinstance(credentials, RefreshableCredentials) and credentials.refresh_needed():
            # Refreshing (STS, IMDS, SSO) is blocking I/O: keep it off the event loop.
            return await asyncio.to_thread(credentials.get_frozen_credentials)
        return credentials.get_frozen_credentials()

    async def _first(self) -> Credentials:
        """The chain's credentials, resolved once (in a thread) however many calls wait for them."""
        async with self._lock:
            if self._credentials is None:
                self._credentials = await asyncio.to_thread(self._resolve)
            return self._credentials

    def _resolve(self) -> Credentials:
        try:
            credentials = Session(profile=self._profile).get_credentials()
        except BotoCoreError as exc:
            raise errors.ProviderMisconfigured(
                f"{self._provider}: could not load AWS credentials ({type(exc).__name__})",
                provider=self._provider,
            ) from None
        if credentials is None:
            raise errors.ProviderMisconfigured(
                f"{self._provider}: no AWS credentials found (env, shared files, SSO or instance role)",
                provider=self._provider,
            )
        return credentials


def sign(request: HttpRequest, credentials: ReadOnlyCredentials, region: str, service: str) -> HttpRequest:
    """`request` with SigV4 headers (X-Amz-Date, Authorization, X-Amz-Security-Token) added.

    Every header present is signed (except those botocore never signs), so add nothing that must
    stay signed afterwards; URL and body are used byte for byte.
    """
    aws = AWSRequest(method=request.method, url=request.url, data=request.body, headers=dict(request.headers))
    SigV4Auth(credentials, service, region).add_auth(aws)
    return HttpRequest(request.method, request.url, dict(aws.headers.items()), request.body)
