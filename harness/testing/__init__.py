"""Test helpers shipped with the package: a fake OpenAI/Anthropic server with fault injection.

Needs the test extras (starlette, uvicorn): `pip install -e '.[test]'`.
"""
