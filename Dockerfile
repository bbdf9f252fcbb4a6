# One image for the model service (`driftkeeper serve` under gunicorn), the retraining Job
# (`driftkeeper retrain`) and the operator (`driftkeeper operator`). Models are not baked in: they
# live on a volume (a training Job or init container writes them), so a retrain never needs
# a rebuild. The diamonds table ships inside the package, so nothing is downloaded at runtime.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY operator ./operator
RUN pip install --no-cache-dir --prefix=/install '.[kubernetes]'

FROM python:3.11-slim
RUN useradd --uid 10001 --create-home driftkeeper
COPY --from=build /install /usr/local
ENV PYTHONUNBUFFERED=1 \
    OMP_NUM_THREADS=1 \
    DRIFTKEEPER_MODEL_DIR=/models \
    DRIFTKEEPER_STATE_DIR=/tmp/driftkeeper \
    DRIFTKEEPER_HOST=0.0.0.0 \
    DRIFTKEEPER_PORT=8080
USER 10001
EXPOSE 8080
ENTRYPOINT ["driftkeeper"]
CMD ["serve"]
