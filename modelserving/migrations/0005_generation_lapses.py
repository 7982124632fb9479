from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('modelserving', '0004_generation_recoveries'),
    ]

    operations = [
        migrations.AddField(
            model_name='generation',
            name='lapses',
            field=models.PositiveSmallIntegerField(default=0, help_text='Times its worker stopped mid-try (its lease lapsed) and the sweep sent it again; RECOVERY_MAX_REQUEUES of these and it ends failed.'),
        ),
    ]
