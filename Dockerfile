# The Kubenas operator image: the kopf operator and the pure core, no torch (the controller pod and
# trainers use trainer_image/Dockerfile).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY trainer_image ./trainer_image
RUN python -m pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="kubenas-operator" \
      org.opencontainers.image.description="Kubernetes-native neural architecture search operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /install /usr/local
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin kubenas
USER 10001
ENV PYTHONUNBUFFERED=1
EXPOSE 8080 9090
ENTRYPOINT ["kubenas", "operator"]
