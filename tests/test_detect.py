"""Dialect detection from the request's method and path: every real endpoint shape, and no other.

Shapes are the vendors' own and those of the gateways in front of them, as their documentation or
SDKs build them (base URL + the SDK's path).
"""

from __future__ import annotations

import pytest

from usagefix.dialects import detect, model_from_path

ACCT = "/v1/0123abcd/my-gateway"  # Cloudflare AI Gateway: /v1/{account_id}/{gateway_id}/{provider}/…
VERTEX = "/v1/projects/p/locations/us-east5/publishers"

LLM_ENDPOINTS = [
    # OpenAI Chat Completions and the OpenAI-compatible family
    ("/v1/chat/completions", "openai_chat"),  # OpenAI, xAI, Mistral, vLLM, Ollama, LM Studio, LiteLLM
    ("/chat/completions", "openai_chat"),  # DeepSeek, Perplexity (base URL without /v1)
    ("/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", "openai_chat"),  # Azure
    ("/openai/v1/chat/completions", "openai_chat"),  # Azure v1, Groq
    ("/api/v1/chat/completions", "openai_chat"),  # OpenRouter
    ("/v1beta/openai/chat/completions", "openai_chat"),  # Gemini's OpenAI-compatible endpoint
    ("/v1/projects/p/locations/us-central1/endpoints/openapi/chat/completions", "openai_chat"),  # Vertex
    (f"{ACCT}/compat/chat/completions", "openai_chat"),  # Cloudflare unified endpoint
    ("/v1/chat/completions/", "openai_chat"),  # a trailing slash
    # OpenAI Responses
    ("/v1/responses", "openai_responses"),  # OpenAI, xAI, Ollama, LM Studio, vLLM, LiteLLM
    ("/responses", "openai_responses"),  # LiteLLM proxy, bare route
    ("/openai/responses?api-version=2025-04-01-preview", "openai_responses"),  # Azure
    ("/openai/v1/responses?api-version=preview", "openai_responses"),  # Azure v1
    ("/api/v1/responses", "openai_responses"),  # OpenRouter
    (f"{ACCT}/openai/responses", "openai_responses"),  # Cloudflare
    # Anthropic Messages: the SDK appends /v1/messages to any base URL
    ("/v1/messages", "anthropic"),
    ("/v1/messages?beta=true", "anthropic"),  # Claude Code (the SDK's beta client)
    ("/anthropic/v1/messages", "anthropic"),  # LiteLLM pass-through; DeepSeek's, Kimi's Anthropic API
    ("/api/v1/messages", "anthropic"),  # OpenRouter (ANTHROPIC_BASE_URL=https://openrouter.ai/api)
    ("/v1/anthropic/v1/messages", "anthropic"),  # a gateway base URL with a path (…/v1/anthropic)
    (f"{ACCT}/anthropic/v1/messages", "anthropic"),  # Cloudflare
    (f"{VERTEX}/anthropic/models/claude-sonnet-4-5@20250929:rawPredict", "anthropic"),  # Vertex
    (f"{VERTEX}/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict", "anthropic"),
    # Gemini, Vertex AI
    ("/v1beta/models/gemini-2.5-pro:generateContent", "gemini"),
    ("/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", "gemini"),
    ("/v1beta/tunedModels/my-model:generateContent", "gemini"),
    (f"{VERTEX}/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse", "gemini"),
    ("/v1/publishers/google/models/gemini-2.5-flash:generateContent", "gemini"),  # Vertex express
    (f"{ACCT}/google-ai-studio/v1beta/models/gemini-2.5-pro:generateContent", "gemini"),  # Cloudflare
    # AWS Bedrock Runtime
    ("/model/anthropic.claude-3-5-sonnet-20240620-v1:0/invoke", "bedrock"),
    ("/model/amazon.nova-pro-v1%3A0/converse", "bedrock"),
    ("/model/us.amazon.nova-pro-v1%3A0/converse-stream", "bedrock"),
    ("/model/anthropic.claude-sonnet-4-5-v1%3A0/invoke-with-response-stream", "bedrock"),
    ("/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.claude/converse", "bedrock"),
    ("/model/arn:aws:bedrock:us-east-1:1:inference-profile/us.claude/converse", "bedrock"),
    (f"{ACCT}/aws-bedrock/bedrock-runtime/us-east-1/model/amazon.nova-pro-v1:0/invoke", "bedrock"),
]

NOT_LLM_ENDPOINTS = [
    "/v1/threads/thread_abc123/messages",  # OpenAI Assistants: a message added to a thread
    "/openai/threads/thread_abc123/messages?api-version=2024-05-01-preview",  # the same on Azure
    "/v1/threads/v1/messages",  # … even with a thread named like a version
    "/api/forms/42/responses",  # a form's responses
    "/v3/surveys/123/responses",  # a survey's responses
    "/v1/responses/resp_123/cancel",
    "/v1/responses/input_tokens",
    "/v1/messages/count_tokens",
    "/v1/messages/batches",
    "/messages",  # not what any Anthropic client sends
    "/v1/chat/completions/chatcmpl-123",  # updating a stored completion
    "/v1/completions/chat",
    "/v1/embeddings",
    "/v1/models",
    "/",
    "",
    "/v1beta/models/gemini-2.5-pro:countTokens",
    "/v1beta/models/gemini-embedding-001:embedContent",
    f"{VERTEX}/anthropic/models/count-tokens:rawPredict",  # Claude on Vertex: a count, not a message
    f"{VERTEX}/mistralai/models/mistral-large-2411:rawPredict",  # other publishers do not speak Anthropic
    f"{VERTEX}/meta/models/llama-4:streamRawPredict",
    "/v1/projects/p/locations/us-central1/endpoints/1234:rawPredict",  # a custom model
    "/api/model/foo/bar/invoke",  # an invoke that is not Bedrock's
    "/model/x/count-tokens",
]


@pytest.mark.parametrize(("path", "dialect"), LLM_ENDPOINTS)
def test_every_real_endpoint_shape_is_recognised(path: str, dialect: str) -> None:
    found = detect("POST", path)
    assert found is not None and found.name == dialect


@pytest.mark.parametrize("path", NOT_LLM_ENDPOINTS)
def test_what_only_looks_like_an_llm_endpoint_is_left_alone(path: str) -> None:
    assert detect("POST", path) is None


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT", "OPTIONS"])
def test_only_posts_are_llm_requests(method: str) -> None:
    assert all(detect(method, path) is None for path, _ in LLM_ENDPOINTS)
    assert detect("post", "/v1/messages") is not None


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/v1beta/models/gemini-2.5-pro:generateContent", "gemini-2.5-pro"),
        (f"{VERTEX}/anthropic/models/claude-sonnet-4-5%4020250929:rawPredict", "claude-sonnet-4-5@20250929"),
        ("/model/amazon.nova-pro-v1:0/converse", "amazon.nova-pro-v1:0"),
        ("/model/amazon.nova-pro-v1%3A0/converse", "amazon.nova-pro-v1:0"),
        (
            "/model/arn:aws:bedrock:us-east-1:1:inference-profile/us.claude/converse",
            "arn:aws:bedrock:us-east-1:1:inference-profile/us.claude",
        ),
        ("/v1/chat/completions", None),
        ("/model//converse", None),
    ],
)
def test_the_model_is_read_from_the_path_decoded(path: str, model: str | None) -> None:
    assert model_from_path(path) == model
