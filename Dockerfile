FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pageperfect ./pageperfect
COPY workflows ./workflows
COPY activities ./activities
COPY api ./api
COPY db ./db
COPY worker.py ./
RUN pip install --no-cache-dir . && pip install --no-cache-dir --no-deps $(python -c \
    'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["tool"]["pageperfect"]["no-deps"]))')
# The API migrates at start (advisory-locked, so several replicas are safe).
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
