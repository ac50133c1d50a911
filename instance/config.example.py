# Copy to instance/config.py (git-ignored) to override settings locally.
# Loaded after the environment's config class and before IRIS_SERVICE_* variables.

# MODEL_PATH = "instance/iris_model.joblib"
# MODEL_DIR = "instance/models"          # <name>/<version>/model.joblib folders
# DEFAULT_MODEL = "iris"
# MAX_BATCH_SIZE = 10000
# ADMIN_TOKEN = "change-me"              # enables POST /admin/models/<name>/reload
